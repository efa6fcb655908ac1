-- The seed's tables, created only where absent so that existing data is kept.
CREATE TABLE IF NOT EXISTS primary_profiles (
    id UUID DEFAULT gen_random_uuid() PRIMARY KEY,
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
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    last_scraped_at TIMESTAMPTZ,
    scraping_status VARCHAR(50) DEFAULT 'pending'
);

CREATE TABLE IF NOT EXISTS queue (
    id UUID DEFAULT gen_random_uuid() PRIMARY KEY,
    username VARCHAR(255) NOT NULL,
    source VARCHAR(50) NOT NULL,
    priority VARCHAR(10) NOT NULL,
    status VARCHAR(20) DEFAULT 'PENDING',
    timestamp TIMESTAMPTZ DEFAULT NOW(),
    last_attempt TIMESTAMPTZ,
    attempts INTEGER DEFAULT 0,
    error_message TEXT,
    request_id VARCHAR(50) UNIQUE NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

-- Usernames are case-insensitive: every lookup goes through lower(username).
CREATE INDEX IF NOT EXISTS queue_lower_username_v1 ON queue (lower(username));
CREATE INDEX IF NOT EXISTS primary_profiles_lower_username_v1 ON primary_profiles (lower(username));
-- Active rows in queue order, for counting positions without the projection.
CREATE INDEX IF NOT EXISTS queue_active_order_v1 ON queue (
    (CASE priority WHEN 'HIGH' THEN 0 WHEN 'MEDIUM' THEN 1 ELSE 2 END),
    (COALESCE(timestamp, '-infinity'::timestamptz)),
    id
) WHERE status IN ('PENDING', 'PROCESSING');
