//! Queries with DataFusion. Each query gets a `SessionContext` whose
//! tables are [`TableSnapshot`]s taken under one lock: the manifest's
//! files of the table and its write buffer as Arrow batches, so a query
//! sees each row once. A scan keeps only the files whose time range can
//! meet the query's filters (DataFusion's `PruningPredicate` over the
//! manifest's min/max `time`), reads them with DataFusion's Parquet
//! source (row-group statistics prune further; columns a file lacks read
//! as null), and adds the buffer.
//!
//! Bounds: one memory pool for all queries (`memory_bytes`; an operator
//! past it spills into the store's `tmp/spill` or fails with
//! "Resources exhausted"), a timeout checked inside the plan (see
//! [`crate::deadline`]) and by a timer around it, a cap
//! on the rows of an answer, and `SQLOptions` without DDL, DML or
//! statements, so a query cannot create tables over other files, copy
//! out, or change settings.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, TimestampNanosecondArray, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, DataFusionError, ScalarValue, TableReference};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;

use crate::columns::UTC;
use crate::deadline::Deadline;
use crate::manifest::FileEntry;
use crate::schema::TIME;

/// One table as a query sees it.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// Its name.
    pub name: String,
    /// Its current Arrow schema.
    pub schema: SchemaRef,
    /// Its live files (under `data_dir`).
    pub files: Vec<FileEntry>,
    /// Its unflushed rows, in `schema`.
    pub buffer: Vec<RecordBatch>,
    /// The database's `data/` directory.
    pub data_dir: PathBuf,
    /// Held while the snapshot lives: files that compaction or retention
    /// took out of the manifest after it was taken are deleted only once
    /// every snapshot that could read them is gone.
    pub files_in_use: Arc<()>,
}

/// How queries are bounded.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// The memory pool shared by running queries.
    pub memory_bytes: usize,
    /// Spill space (inside the store) an operator may use past the pool
    /// (0: none, operators past the pool fail).
    pub spill_bytes: u64,
    /// A query running longer is cancelled.
    pub timeout: Duration,
    /// An answer with more rows is refused (add a LIMIT).
    pub max_rows: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            spill_bytes: 4 << 30,
            timeout: Duration::from_secs(60),
            max_rows: 1_000_000,
        }
    }
}

/// Why a query gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or plan, or is not allowed (the engine's
    /// message).
    #[error("{0}")]
    Invalid(String),
    /// It needed more memory than the pool has.
    #[error("the query needs more memory than the store allows ({limit} bytes): {why}")]
    Memory {
        /// The pool's size.
        limit: usize,
        /// The engine's message.
        why: String,
    },
    /// It ran past the timeout and was cancelled.
    #[error("the query ran longer than {0:?} and was cancelled")]
    Timeout(Duration),
    /// Its answer has too many rows.
    #[error("the answer has more than {0} rows: add a LIMIT or aggregate")]
    TooLarge(usize),
    /// Reading the data failed.
    #[error("the query failed: {0}")]
    Failed(String),
}

/// An answer: its schema and rows.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The columns.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

impl Answer {
    /// How many rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs queries over snapshots within the limits.
#[derive(Debug)]
pub struct Engine {
    runtime: Arc<RuntimeEnv>,
    limits: QueryLimits,
}

impl Engine {
    /// An engine whose operators may spill into `spill_dir` (none: they
    /// never spill).
    pub fn new(limits: QueryLimits, spill_dir: Option<PathBuf>) -> Result<Self, QueryError> {
        let mode = match spill_dir {
            Some(dir) => DiskManagerMode::Directories(vec![dir]),
            None => DiskManagerMode::Disabled,
        };
        let disk = DiskManagerBuilder::default()
            .with_mode(mode)
            .with_max_temp_directory_size(limits.spill_bytes.max(1));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_disk_manager_builder(disk)
            .build_arc()
            .map_err(|e| QueryError::Failed(e.to_string()))?;
        Ok(Self { runtime, limits })
    }

    /// The limits.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Runs `sql` (one read-only statement) over `tables`.
    pub async fn run(&self, tables: Vec<TableSnapshot>, sql: &str) -> Result<Answer, QueryError> {
        let config = SessionConfig::new()
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
        for t in tables {
            let name = TableReference::bare(t.name.clone());
            ctx.register_table(name, Arc::new(StoreTable { snap: t }))
                .map_err(|e| QueryError::Failed(e.to_string()))?;
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let max_rows = self.limits.max_rows;
        let deadline = Deadline::new(Instant::now() + self.limits.timeout);
        let run = async {
            let df = ctx.sql_with_options(sql, options).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let task = df.task_ctx();
            let plan = deadline.wrap(df.create_physical_plan().await?)?;
            let mut stream = execute_stream(plan, Arc::new(task))?;
            let mut batches = Vec::new();
            let mut rows = 0usize;
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows();
                if rows > max_rows {
                    return Ok(Err(QueryError::TooLarge(max_rows)));
                }
                if b.num_rows() > 0 {
                    batches.push(b);
                }
            }
            Ok::<_, DataFusionError>(Ok(Answer { schema, batches }))
        };
        // The timer stops a query waiting on I/O; the deadline inside the
        // plan stops one computing.
        match tokio::time::timeout(self.limits.timeout, run).await {
            Err(_) => Err(QueryError::Timeout(self.limits.timeout)),
            Ok(Err(_)) if deadline.expired() => Err(QueryError::Timeout(self.limits.timeout)),
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Err(self.error(e)),
        }
    }

    fn error(&self, e: DataFusionError) -> QueryError {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(why) => QueryError::Memory {
                limit: self.limits.memory_bytes,
                why: why.clone(),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::Invalid(e.to_string()),
            _ => QueryError::Failed(e.to_string()),
        }
    }
}

#[derive(Debug)]
struct StoreTable {
    snap: TableSnapshot,
}

/// The manifest's statistics of some files, for `PruningPredicate`.
struct FileStats<'a> {
    files: &'a [FileEntry],
}

impl FileStats<'_> {
    fn times(&self, f: impl Fn(&FileEntry) -> i64) -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from_iter_values(self.files.iter().map(f)).with_timezone(UTC),
        )
    }
}

impl PruningStatistics for FileStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == TIME).then(|| self.times(|f| f.min_time))
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == TIME).then(|| self.times(|f| f.max_time))
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        (column.name == TIME)
            .then(|| Arc::new(UInt64Array::from_iter_values(self.files.iter().map(|_| 0))) as _)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(
            self.files.iter().map(|f| f.rows),
        )))
    }

    fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

impl StoreTable {
    /// The files whose time range can meet `filters`.
    fn pruned(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> datafusion::common::Result<Vec<FileEntry>> {
        let files = &self.snap.files;
        let Some(expr) = conjunction(filters.iter().cloned()) else {
            return Ok(files.clone());
        };
        let df_schema = DFSchema::try_from(self.snap.schema.clone())?;
        let physical = state.create_physical_expr(expr, &df_schema)?;
        let Some(predicate) = PruningPredicateBuilder::new()
            .with_file_schema(self.snap.schema.clone())
            .build(physical)
        else {
            return Ok(files.clone());
        };
        let keep = predicate.prune(&FileStats { files })?;
        Ok(files
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(f, _)| f.clone())
            .collect())
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.snap.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        // Used to prune files; DataFusion still filters the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let schema = &self.snap.schema;
        let files = self.pruned(state, filters)?;
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let n = state.config().target_partitions().max(1);
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n.min(files.len())];
            let count = groups.len();
            for (i, f) in files.iter().enumerate() {
                let path = self.snap.data_dir.join(f.file_name());
                groups[i % count].push(PartitionedFile::new(path.to_string_lossy(), f.bytes));
            }
            let source = Arc::new(ParquetSource::new(schema.clone()));
            let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            plans.push(DataSourceExec::from_data_source(config));
        }
        if !self.snap.buffer.is_empty() || plans.is_empty() {
            let mut mem = MemorySourceConfig::try_new(
                std::slice::from_ref(&self.snap.buffer),
                schema.clone(),
                projection.cloned(),
            )?;
            mem = mem.with_limit(limit);
            plans.push(DataSourceExec::from_data_source(mem));
        }
        UnionExec::try_new(plans)
    }
}
