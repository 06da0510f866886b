//! Any bytes as a Kafka request frame: decoding returns a request or a
//! refusal, never panics or aborts. Uses the broker's own allocator, as the
//! `weir` binary does.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: weir_broker::alloc::WeirAlloc = weir_broker::alloc::WeirAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = weir_broker::decode_request(bytes::Bytes::copy_from_slice(data));
});
