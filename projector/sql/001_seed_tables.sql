-- The seed's tables, created only where absent so that existing data is kept.
--
-- `@extschema@` is where `migrate` installs (its session's current schema), as in
-- an extension script. Every function and operator is qualified with pg_catalog:
-- a role that may create objects in that schema must not be able to bind our
-- defaults or indexes to functions of its own (a `lower(varchar)` or an
-- `=(varchar, varchar)` matches closer than pg_catalog's text ones, wherever it
-- is in the search path).
CREATE TABLE IF NOT EXISTS @extschema@.primary_profiles (
    id UUID DEFAULT pg_catalog.gen_random_uuid() PRIMARY KEY,
    username VARCHAR(255) UNIQUE NOT NULL,
    full_name VARCHAR(255),
    followers_count INTEGER,
    following_count INTEGER,
    posts_count INTEGER,
    bio TEXT,
    profile_pic_url TEXT,
    is_verified BOOLEAN DEFAULT FALSE,
    is_private BOOLEAN DEFAULT FALSE,
    profile_data JSONB DEFAULT '{}',
    content_stats JSONB DEFAULT '{}',
    engagement_metrics JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT pg_catalog.now(),
    updated_at TIMESTAMPTZ DEFAULT pg_catalog.now(),
    last_scraped_at TIMESTAMPTZ,
    scraping_status VARCHAR(50) DEFAULT 'pending'
);

CREATE TABLE IF NOT EXISTS @extschema@.queue (
    id UUID DEFAULT pg_catalog.gen_random_uuid() PRIMARY KEY,
    username VARCHAR(255) NOT NULL,
    source VARCHAR(50) NOT NULL,
    priority VARCHAR(10) NOT NULL,
    status VARCHAR(20) DEFAULT 'PENDING',
    timestamp TIMESTAMPTZ DEFAULT pg_catalog.now(),
    last_attempt TIMESTAMPTZ,
    attempts INTEGER DEFAULT 0,
    error_message TEXT,
    request_id VARCHAR(50) UNIQUE NOT NULL,
    created_at TIMESTAMPTZ DEFAULT pg_catalog.now(),
    updated_at TIMESTAMPTZ DEFAULT pg_catalog.now()
);

-- Usernames are case-insensitive: every lookup goes through lower(username).
CREATE INDEX IF NOT EXISTS queue_lower_username_v1 ON @extschema@.queue (pg_catalog.lower(username));
CREATE INDEX IF NOT EXISTS primary_profiles_lower_username_v1 ON @extschema@.primary_profiles (pg_catalog.lower(username));
-- Active rows in queue order, for counting positions without the projection. `migrate`
-- substitutes @queue_order@ and @active@ with the spellings the queries use
-- (shared/postgres/snapshots.py SQL_PLACEHOLDERS, from the model's queue order).
-- (Installs from before the qualified spelling have the same index written with
-- a simple CASE and IN: it means the same, and queries use it by its predicate.)
CREATE INDEX IF NOT EXISTS queue_active_order_v1 ON @extschema@.queue (
    @queue_order@,
    (COALESCE(timestamp, '-infinity'::timestamptz)),
    id
) WHERE @active@;
