"""The PostgreSQL schema, as numbered migrations applied in order at start (`shared.pg.migrate`).

Never edit a migration that has shipped: add the next number. Each runs in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


JOBS = """
-- One row per job. Everything the pipeline filters or sorts on is a real column with an
-- index; the rest of the job (request, route, attempts, result, ...) is the JSONB `doc`.
CREATE TABLE jobs (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL,
    state           text NOT NULL,
    version         bigint NOT NULL DEFAULT 0,
    idem            text NOT NULL,
    active_provider text,
    slots           integer NOT NULL DEFAULT 1,
    queued_at       timestamptz,
    not_before      timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    doc             jsonb NOT NULL
);
-- Idempotency: "<tenant>:<key>", or the job id for jobs without a key.
CREATE UNIQUE INDEX jobs_idem ON jobs (idem);
-- GET /v1/jobs: a tenant's jobs newest first, optionally of one state.
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_tenant_state_created ON jobs (tenant_id, state, created_at DESC, id DESC);
-- The reconciler's sweep and counts: by state and last update.
CREATE INDEX jobs_state_updated ON jobs (state, updated_at);
-- Admission and queue positions: each provider's queue, oldest first. Partial: only queued
-- rows are in it, so it stays small however long the history grows.
CREATE INDEX jobs_queue ON jobs (active_provider, queued_at, id) WHERE state = 'queued';
-- Pollers resuming a provider's in-flight jobs.
CREATE INDEX jobs_active_provider ON jobs (active_provider, state)
    WHERE state IN ('submitting', 'running', 'storing', 'scoring');

-- Provider task ids -> job (webhook hints, reconciliation). Written in the same statement as
-- the attempt that records the task.
CREATE TABLE job_tasks (
    provider text NOT NULL,
    task_id  text NOT NULL,
    job_id   text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (provider, task_id)
);
CREATE INDEX job_tasks_job ON job_tasks (job_id);

-- Provider slots in use (candidates of jobs in submitting or running; migration 5 adds storing
-- and scoring), kept by a trigger on
-- every state change, so admission reads one row per provider instead of every job in flight.
CREATE TABLE provider_slots (
    provider text PRIMARY KEY,
    in_use   integer NOT NULL DEFAULT 0
);

CREATE FUNCTION reelforge_slots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP IN ('UPDATE', 'DELETE') AND OLD.state IN ('submitting', 'running');
    now_in boolean := TG_OP IN ('UPDATE', 'INSERT') AND NEW.state IN ('submitting', 'running');
BEGIN
    IF was AND (NOT now_in OR OLD.active_provider IS DISTINCT FROM NEW.active_provider
                OR OLD.slots <> NEW.slots) THEN
        UPDATE provider_slots SET in_use = in_use - OLD.slots
            WHERE provider = coalesce(OLD.active_provider, '');
    END IF;
    IF now_in AND (NOT was OR OLD.active_provider IS DISTINCT FROM NEW.active_provider
                   OR OLD.slots <> NEW.slots) THEN
        INSERT INTO provider_slots AS p (provider, in_use)
            VALUES (coalesce(NEW.active_provider, ''), NEW.slots)
            ON CONFLICT (provider) DO UPDATE SET in_use = p.in_use + EXCLUDED.in_use;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_slots AFTER INSERT OR DELETE OR UPDATE OF state, active_provider, slots
    ON jobs FOR EACH ROW EXECUTE FUNCTION reelforge_slots();

-- Set a value at a dotted path of a JSONB document, creating missing parents (as MongoDB's
-- $set does): reelforge_set('{}', '{attempts,a1,state}', '"running"').
CREATE FUNCTION reelforge_set(doc jsonb, path text[], val jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    base jsonb := coalesce(doc, '{}'::jsonb);
BEGIN
    IF jsonb_typeof(base) IS DISTINCT FROM 'object' THEN
        base := '{}'::jsonb;
    END IF;
    IF cardinality(path) = 1 THEN
        RETURN jsonb_set(base, path, val, true);
    END IF;
    RETURN jsonb_set(base, path[1:1], reelforge_set(base -> path[1], path[2:], val), true);
END $$;

-- Add `delta` to the number at a dotted path (0 when missing): atomic counters such as spend.
CREATE FUNCTION reelforge_inc(doc jsonb, path text[], delta numeric) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT reelforge_set(
        doc, path, to_jsonb(round(coalesce((doc #>> path)::numeric, 0) + delta, 6)))
$$;

-- The transactional outbox: events written in the same transaction as the state change that
-- must announce them; the relay publishes them in id order and deletes them once the broker
-- acknowledged. A crash in between republishes the same event (same event_id).
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    event_id   text NOT NULL,
    topic      text NOT NULL,
    key        text NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}'::jsonb,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

NOTIFIER_DELIVERIES = """
-- The notifier's outgoing webhooks (`services.notifier.store.Delivery`), one row per
-- (job, event type). What the delivery loop filters and sorts on is a real column; the
-- attempt log is a JSONB array that `finish_attempt` appends to in the same statement that
-- checks the lease.
CREATE TABLE deliveries (
    id              text PRIMARY KEY,
    job_id          text NOT NULL,
    tenant_id       text NOT NULL,
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    event_time      timestamptz NOT NULL,
    url             text NOT NULL,
    body            text NOT NULL,
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease           text,
    reason          text,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    log             jsonb NOT NULL DEFAULT '[]'::jsonb
);
-- claim_due (pending and due, oldest first) and count_pending.
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
-- A job's deliveries (admin API, replay).
CREATE INDEX deliveries_job ON deliveries (job_id, created_at);
"""

QC_REVIEWS = """
-- The QC service's human review queue (`services.qc.reviews.Review`). What is filtered,
-- sorted or changed after insert is a real column; the rest of the review as recorded at pick
-- time (provider, model, picked, reason, prompt, video, qc) is the JSONB `doc`.
CREATE TABLE reviews (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    job_id      text NOT NULL,
    attempt_id  text NOT NULL,
    candidate   integer NOT NULL,
    status      text NOT NULL,
    feedback    text,
    created_at  timestamptz NOT NULL,
    decided_at  timestamptz,
    refinement  jsonb,
    updated_at  timestamptz NOT NULL,
    doc         jsonb NOT NULL
);
-- One review per (job, attempt): a replayed pick adds nothing. Also serves list_for_job.
CREATE UNIQUE INDEX reviews_job_attempt ON reviews (job_id, attempt_id);
-- A tenant's queue newest first, of one status or of all.
CREATE INDEX reviews_tenant_status_created ON reviews (tenant_id, status, created_at DESC, id);
CREATE INDEX reviews_tenant_created ON reviews (tenant_id, created_at DESC, id);
"""

WEBHOOK_IDS = """
-- Standard Webhooks ids seen by intake's /hooks ingress, kept while a replay of the same
-- signed message could still pass the timestamp check; a second one is refused.
CREATE TABLE webhook_ids (
    provider    text NOT NULL,
    webhook_id  text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (provider, webhook_id)
);
CREATE INDEX webhook_ids_expires ON webhook_ids (expires_at);
"""

SLOTS_WHILE_STORING = """
-- A multi-candidate job moves to storing with its first stored candidate while the others
-- still render, and to scoring while QC scores them: it keeps its provider slots until it
-- leaves all four states (migration 1 freed them at storing, so admission overshot limits).
CREATE OR REPLACE FUNCTION reelforge_slots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := TG_OP IN ('UPDATE', 'DELETE')
        AND OLD.state IN ('submitting', 'running', 'storing', 'scoring');
    now_in boolean := TG_OP IN ('UPDATE', 'INSERT')
        AND NEW.state IN ('submitting', 'running', 'storing', 'scoring');
BEGIN
    IF was AND (NOT now_in OR OLD.active_provider IS DISTINCT FROM NEW.active_provider
                OR OLD.slots <> NEW.slots) THEN
        UPDATE provider_slots SET in_use = in_use - OLD.slots
            WHERE provider = coalesce(OLD.active_provider, '');
    END IF;
    IF now_in AND (NOT was OR OLD.active_provider IS DISTINCT FROM NEW.active_provider
                   OR OLD.slots <> NEW.slots) THEN
        INSERT INTO provider_slots AS p (provider, in_use)
            VALUES (coalesce(NEW.active_provider, ''), NEW.slots)
            ON CONFLICT (provider) DO UPDATE SET in_use = p.in_use + EXCLUDED.in_use;
    END IF;
    RETURN NULL;
END $$;
-- Recount under a lock that keeps writers out, so the counts match the new rule.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO provider_slots (provider)
    SELECT DISTINCT coalesce(active_provider, '') FROM jobs ON CONFLICT DO NOTHING;
UPDATE provider_slots p SET in_use = coalesce((
    SELECT sum(slots) FROM jobs
    WHERE coalesce(active_provider, '') = p.provider
      AND state IN ('submitting', 'running', 'storing', 'scoring')), 0);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, tasks, slots, outbox", JOBS),
    Migration(2, "notifier deliveries", NOTIFIER_DELIVERIES),
    Migration(3, "qc reviews", QC_REVIEWS),
    Migration(4, "webhook ids (replay guard)", WEBHOOK_IDS),
    Migration(5, "slots held while storing and scoring", SLOTS_WHILE_STORING),
)
