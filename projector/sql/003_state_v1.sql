-- What the projector must remember across restarts, beside Redis rather than in it.
--
-- `redis_seq:{key prefix}:{shard}`: the highest change number the projector has seen
-- Redis acknowledge in that shard. A Redis whose counter is lower has lost writes it
-- acknowledged (a lagging replica promoted, an AOF cut short, a restore from backup):
-- the projector then repairs it with a full rebuild.
CREATE TABLE IF NOT EXISTS @extschema@.profile_status_state_v1 (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT pg_catalog.now()
);
