-- Why a cancel was requested, so the CANCELLED history row can say so even when a worker or the
-- reconciler completes the cancellation later.
alter table tasks add column cancel_reason text;
