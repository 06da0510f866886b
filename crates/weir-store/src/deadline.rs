//! A query's deadline, checked inside the plan.
//!
//! DataFusion's operators return to the async runtime only when a source
//! has nothing ready; over in-memory buffers and local files a join or a
//! filter can loop for minutes without ever doing so, and the tasks it
//! spawned occupy every query thread. A timer beside the query can then
//! neither fire nor stop it. So every node of a physical plan is wrapped in
//! a [`DeadlineExec`] whose stream checks the clock at each poll and, once
//! the deadline has passed, ends with an error: the operator above it gets
//! the error the next time it asks for a batch (at most one batch of work
//! later), and the whole plan unwinds.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, RecordBatchStream,
    SendableRecordBatchStream,
};
use futures::Stream;

/// When a query must end, and whether it was stopped for that.
#[derive(Debug, Clone)]
pub struct Deadline {
    at: Instant,
    expired: Arc<AtomicBool>,
}

impl Deadline {
    /// A deadline at `at`.
    pub fn new(at: Instant) -> Self {
        Self {
            at,
            expired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether some part of the plan stopped because the deadline passed.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<()> {
        if Instant::now() < self.at {
            return Ok(());
        }
        self.expired.store(true, Ordering::Relaxed);
        Err(DataFusionError::Execution(
            "the query ran past its timeout".into(),
        ))
    }

    /// `plan` with every node wrapped so that it checks this deadline.
    pub fn wrap(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let wrapped: Arc<dyn ExecutionPlan> = Arc::new(DeadlineExec {
                properties: node.properties().clone(),
                input: node,
                deadline: self.clone(),
            });
            Ok(Transformed::yes(wrapped))
        })
        .map(|t| t.data)
    }
}

/// A node that passes its input through until the deadline.
#[derive(Debug)]
pub struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    deadline: Deadline,
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadlineExec")
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "DeadlineExec has one child, not {}",
                children.len()
            )));
        }
        let input = children.swap_remove(0);
        Ok(Arc::new(Self {
            properties: input.properties().clone(),
            input,
            deadline: self.deadline.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.deadline.check()?;
        Ok(Box::pin(DeadlineStream {
            input: self.input.execute(partition, context)?,
            deadline: self.deadline.clone(),
            done: false,
        }))
    }
}

struct DeadlineStream {
    input: SendableRecordBatchStream,
    deadline: Deadline,
    done: bool,
}

impl Stream for DeadlineStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Err(e) = self.deadline.check() {
            self.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        self.input.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for DeadlineStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}
