-- EXPIRED (issue 27): a task that was not started by its deadline (CreateTask expire_after, or its
-- queue's default). A migration of its own: a value added by ALTER TYPE cannot be used before it
-- commits, and 0028 indexes it (src/store/migrate.ts runs each migration in its own transaction).
alter type task_status add value if not exists 'expired';
