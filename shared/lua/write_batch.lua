-- Many usernames' writes in one call, on a single Redis, where one script may touch
-- any keys (write_rules.lua comes first).
-- KEYS: per username 4: document, then its shard's pending set, running set, members hash
-- ARGV: per username 7: version, digest, document JSON, TTL seconds, username, members, forget
-- Returns per username two codes: the document's, then the members'.
local out = {}
for i = 0, #KEYS / 4 - 1 do
    local k, a = 4 * i, 7 * i
    local version = ARGV[a + 1]
    out[2 * i + 1] = write_document(KEYS[k + 1], version, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
    out[2 * i + 2] = write_members(KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[a + 5], version, ARGV[a + 6], ARGV[a + 7])
end
return out
