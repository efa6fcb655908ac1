-- Many usernames' writes in one call on a single Redis, written and announced as one step
-- (write_rules.lua comes first).
-- KEYS: 1 the change counter; then per username 5: document, its shard's pending set,
--       running set, meta hash, windows hash
-- ARGV: 1 the changes channel, 2 the format of a change line (records.py CHANGE_LINE: counter,
--       seq, token, version, queue move, the sets' changes); then per username 9: version, digest, status,
--       own entry, entries (space separated), document JSON, TTL seconds, forget (1/0), token
-- Returns per username two numbers: outcome (0 stale, 1 unchanged, 2 written) + 10 *
-- previous status, and 1 if its queue entries moved; then the counter's new value (0 if
-- untouched). Publishes one change message with a line for every username written or moved,
-- under the next value of the counter, each line formatted with ARGV[2].
local out, lines = {}, {}
local n = (#KEYS - 1) / 5
for i = 0, n - 1 do
    local k, a = 1 + 5 * i, 2 + 9 * i
    local version = ARGV[a + 1]
    local ok, previous, differs, moved, taken = take(KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], ARGV[a + 9],
        version, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 8], KEYS[k + 1])
    local outcome = 0
    if ok then
        outcome = put_document(KEYS[k + 1], ARGV[a + 6], ARGV[a + 7], differs)
    end
    out[2 * i + 1] = outcome + 10 * previous
    out[2 * i + 2] = moved and 1 or 0
    if outcome == 2 or moved then
        lines[#lines + 1] = {ARGV[a + 9], version, moved and 2 or 0, taken ~= '' and ' ' .. taken or ''}
    end
end
local seq = 0
if #lines > 0 then
    seq = redis.call('INCR', KEYS[1])
    for j, line in ipairs(lines) do
        lines[j] = string.format(ARGV[2], 0, seq, line[1], line[2], line[3], line[4])
    end
    redis.call('PUBLISH', ARGV[1], table.concat(lines, '\n'))
end
out[#out + 1] = seq
return out
