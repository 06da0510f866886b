"""SASL against the broker (run by crates/weir/tests/security.rs).

Modes:
  users    --bootstrap PLAIN_ADDR: creates, describes and deletes SCRAM users
           with confluent-kafka's AdminClient; leaves alice (SHA-256 and
           SHA-512) and bob (SHA-512).
  confluent / kafka-python --bootstrap SASL_ADDR --mechanism M --user U
           --password P --topic T --count N: produces N messages, consumes
           them in a group, checks them byte for byte.
  refused  --bootstrap SASL_ADDR --mechanism M --user U --password P:
           a producer and an admin call must fail with an authentication
           error within a few seconds.
  acl-admin --bootstrap PLAIN_ADDR (a super user's listener): creates the
           topics a-data, a-secret and b-data, and round-trips an ACL
           through confluent-kafka's create/describe/delete_acls.
  acl-alice / acl-bob / acl-revoked --bootstrap SASL_ADDR --user U
           --password P: what the ACLs written by crates/weir/tests/security.rs
           allow and refuse each of them (see there).
"""
import sys
import time

from common import args, check, payload


def users(bootstrap):
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion,
                                       UserScramCredentialUpsertion)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def alter(changes):
        fs = admin.alter_user_scram_credentials(changes)
        out = {}
        for user, f in fs.items():
            try:
                f.result(15)
                out[user] = None
            except Exception as e:  # noqa: BLE001 (the error is the answer)
                out[user] = e.args[0].code() if e.args and hasattr(e.args[0], "code") else str(e)
        return out

    s256 = ScramMechanism.SCRAM_SHA_256
    s512 = ScramMechanism.SCRAM_SHA_512
    got = alter([
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(s256, 4096), b"alice-secret"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(s512, 8192), b"bob-secret"),
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(s256, 4096), b"carol-secret"),
    ])
    check(got == {"alice": None, "bob": None, "carol": None}, f"upsertions: {got}")
    got = alter([UserScramCredentialUpsertion("alice", ScramCredentialInfo(s512, 4096), b"alice-secret")])
    check(got == {"alice": None}, f"second mechanism: {got}")
    # Too few iterations: UNACCEPTABLE_CREDENTIAL (93).
    got = alter([UserScramCredentialUpsertion("dave", ScramCredentialInfo(s256, 1000), b"x")])
    check(got == {"dave": 93}, f"few iterations: {got}")
    # Deleting what is not there: RESOURCE_NOT_FOUND (91).
    got = alter([UserScramCredentialDeletion("nobody", s256)])
    check(got == {"nobody": 91}, f"missing deletion: {got}")
    got = alter([UserScramCredentialDeletion("carol", s256)])
    check(got == {"carol": None}, f"deletion: {got}")

    desc = admin.describe_user_scram_credentials().result(15)
    seen = {u: sorted((i.mechanism.name, i.iterations) for i in d.scram_credential_infos)
            for u, d in desc.items()}
    want = {"alice": [("SCRAM_SHA_256", 4096), ("SCRAM_SHA_512", 4096)],
            "bob": [("SCRAM_SHA_512", 8192)]}
    check(seen == want, f"described: {seen}")
    fs = admin.describe_user_scram_credentials(["carol"])
    try:
        fs["carol"].result(15)
        check(False, "a deleted user was described")
    except Exception as e:  # noqa: BLE001
        check(e.args[0].code() == 91, f"describe a deleted user: {e}")
    print("users ok")


def sasl_config(a):
    return {"bootstrap.servers": a.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": a.mechanism, "sasl.username": a.user, "sasl.password": a.password}


def confluent(a):
    from confluent_kafka import Consumer, Producer
    conf = sasl_config(a)
    p = Producer({**conf, "acks": "all", "enable.idempotence": True})
    errors = []
    for i in range(a.count):
        k, v = payload(a.topic, i)
        while True:
            try:
                p.produce(a.topic, key=k, value=v,
                          on_delivery=lambda err, msg: errors.append(err) if err else None)
                break
            except BufferError:
                p.poll(0.1)
    check(p.flush(60) == 0, "messages left unsent")
    check(not errors, f"delivery errors: {errors[:3]}")
    c = Consumer({**conf, "group.id": f"g-{a.topic}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([a.topic])
    got = {}
    deadline = time.time() + 60
    while len(got) < a.count and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            check(not m.error(), f"consume error: {m.error()}")
            got[m.key()] = m.value()
    c.commit(asynchronous=False)
    c.close()
    check_all(a, got)


def kafka_python(a):
    from kafka import KafkaConsumer, KafkaProducer
    conf = {"bootstrap_servers": a.bootstrap, "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": a.mechanism, "sasl_plain_username": a.user,
            "sasl_plain_password": a.password}
    p = KafkaProducer(acks="all", **conf)
    futures = [p.send(a.topic, key=k, value=v) for k, v in (payload(a.topic, i) for i in range(a.count))]
    p.flush(60)
    for f in futures:
        f.get(30)
    p.close()
    c = KafkaConsumer(a.topic, group_id=f"g-{a.topic}", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=20000, **conf)
    got = {}
    for m in c:
        got[m.key] = m.value
        if len(got) >= a.count:
            break
    c.commit()
    c.close()
    check_all(a, got)


def check_all(a, got):
    want = dict(payload(a.topic, i) for i in range(a.count))
    check(len(got) == a.count, f"read {len(got)} of {a.count}")
    check(got == want, "messages differ from those sent")
    print(f"roundtrip ok {a.count}")


def refused(a):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient
    conf = sasl_config(a)
    failures = []
    conf["error_cb"] = lambda e: failures.append(e)
    started = time.time()
    admin = AdminClient(conf)
    try:
        admin.list_topics(timeout=8)
        check(False, "metadata answered with bad credentials")
    except KafkaException as e:
        failures.append(e.args[0])
    p = Producer({**conf, "message.timeout.ms": 5000})
    p.produce("never", b"x")
    p.flush(8)
    check(failures, "no error reported")
    auth = [f for f in failures if f.code() == -169 or "uthenticat" in f.str()]
    check(auth, f"no authentication error among {[f.str() for f in failures[:3]]}")
    print(f"refused in {time.time() - started:.1f} s: {auth[0].str()}")


TOPIC_AUTH = 29
GROUP_AUTH = 30
CLUSTER_AUTH = 31


def acl_admin(a):
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                       AclPermissionType, AdminClient, NewTopic,
                                       ResourcePatternType, ResourceType)
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.create_topics([NewTopic(t, 1, 1) for t in ("a-data", "a-secret", "b-data")])
    for t, f in fs.items():
        f.result(15)
    binding = AclBinding(ResourceType.TOPIC, "c-", ResourcePatternType.PREFIXED, "User:carol", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    for f in admin.create_acls([binding]).values():
        check(f.result(15) is None, "create_acls")
    carol = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:carol", None,
                             AclOperation.ANY, AclPermissionType.ANY)
    got = admin.describe_acls(carol).result(15)
    check(got == [binding], f"described {got}")
    # MATCH: the bindings that apply to topic c-orders (carol's prefix).
    match = AclBindingFilter(ResourceType.TOPIC, "c-orders", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    check(admin.describe_acls(match).result(15) == [binding], "MATCH misses the prefix")
    deleted = [f.result(15) for f in admin.delete_acls([carol]).values()]
    check(deleted == [[binding]], f"deleted {deleted}")
    check(admin.describe_acls(carol).result(15) == [], "an ACL survived its deletion")
    # A binding Kafka refuses: the CLUSTER resource has one name.
    bad = AclBinding(ResourceType.BROKER, "mine", ResourcePatternType.LITERAL, "User:x", "*",
                     AclOperation.ALTER, AclPermissionType.ALLOW)
    try:
        for f in admin.create_acls([bad]).values():
            f.result(15)
        check(False, "a CLUSTER binding named mine was created")
    except Exception as e:  # noqa: BLE001 (the error is the answer)
        check("kafka-cluster" in str(e) or "INVALID" in str(e), f"refusal: {e}")
    print("admin ok")


def produced_errors(conf, topic, n, extra=None):
    """Produces n messages; the delivery error codes (None for success)."""
    from confluent_kafka import Producer
    p = Producer({**conf, "message.timeout.ms": 10000, **(extra or {})})
    codes = []
    for i in range(n):
        k, v = payload(topic, i)
        p.produce(topic, key=k, value=v,
                  on_delivery=lambda err, msg: codes.append(err.code() if err else None))
    p.flush(20)
    return codes


def consumed(conf, topic, group, want, seconds=20):
    """Consumes up to `want` messages; (messages, error codes seen)."""
    from confluent_kafka import Consumer
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got, errors = [], set()
    deadline = time.time() + seconds
    while time.time() < deadline and len(got) < want and not errors:
        for m in c.consume(100, 0.5):
            if m.error():
                errors.add(m.error().code())
            else:
                got.append(m)
    if got and not errors:
        c.commit(asynchronous=False)
    c.close()
    return got, errors


def acl_alice(a):
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                       AdminClient, ResourcePatternType, ResourceType)
    conf = sasl_config(a)
    # Idempotent: InitProducerId is allowed by WRITE on some topic.
    codes = produced_errors(conf, "a-data", 10, {"enable.idempotence": True, "acks": "all"})
    check(codes == [None] * 10, f"alice to a-data: {codes}")
    codes = produced_errors(conf, "b-data", 3)
    check(codes == [TOPIC_AUTH] * 3, f"alice to b-data: {codes}")
    admin = AdminClient(conf)
    topics = set(admin.list_topics(timeout=10).topics)
    check({"a-data", "a-secret"} <= topics and "b-data" not in topics,
          f"alice sees {sorted(topics)}")
    # The broker answers CLUSTER_AUTHORIZATION_FAILED; librdkafka 2.x
    # reports it as an empty list, so either way alice sees none of the
    # four ACLs that exist.
    try:
        got = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                                   None, None, AclOperation.ANY,
                                                   AclPermissionType.ANY)).result(15)
        check(got == [], f"alice described the ACLs: {got}")
    except Exception as e:  # noqa: BLE001
        check(e.args[0].code() == CLUSTER_AUTH, f"describe_acls as alice: {e}")
    print("alice ok")


def acl_bob(a):
    conf = sasl_config(a)
    group = f"bob-{a.topic}"
    got, errors = consumed(conf, "a-data", group, 10)
    check(len(got) == 10 and not errors, f"bob read {len(got)} of a-data, errors {errors}")
    check(sorted(m.key() for m in got) == sorted(payload("a-data", i)[0] for i in range(10)),
          "bob read other messages")
    _, errors = consumed(conf, "a-secret", group + "-2", 1)
    check(TOPIC_AUTH in errors, f"bob on a-secret (denied): {errors}")
    _, errors = consumed(conf, "a-data", "other-g", 1)
    check(GROUP_AUTH in errors, f"bob in group other-g: {errors}")
    codes = produced_errors(conf, "a-data", 2)
    check(codes == [TOPIC_AUTH] * 2, f"bob writing a-data: {codes}")
    print("bob ok")


def acl_revoked(a):
    codes = produced_errors(sasl_config(a), "a-data", 2)
    check(codes == [TOPIC_AUTH] * 2, f"alice after removal: {codes}")
    print("revoked ok")


def main():
    a = args(("mode", {}), ("--mechanism", {"default": "PLAIN"}), ("--user", {"default": ""}),
             ("--password", {"default": ""}), ("--topic", {"default": "sasl"}),
             ("--count", {"type": int, "default": 1000}))
    {"users": lambda: users(a.bootstrap), "confluent": lambda: confluent(a),
     "kafka-python": lambda: kafka_python(a), "refused": lambda: refused(a),
     "acl-admin": lambda: acl_admin(a), "acl-alice": lambda: acl_alice(a),
     "acl-bob": lambda: acl_bob(a), "acl-revoked": lambda: acl_revoked(a)}[a.mode]()


if __name__ == "__main__":
    sys.exit(main())
