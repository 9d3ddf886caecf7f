-- The W3C traceparent of the request (or schedule tick) that created the task (src/tracing.ts):
-- the worker's `process <queue>` span links to it, so a trace viewer follows a task from its
-- CreateTask to its attempts. Written once by the create statement (src/store/lifecycle/create.ts)
-- and never updated; null when the create carried none and tracing was off. Not indexed: nothing
-- looks tasks up by trace, and an index would cost every insert (docs/design/hot-path.md). A
-- nullable column without a default is a catalog change only; existing rows are not rewritten.
alter table tasks add column traceparent text;
