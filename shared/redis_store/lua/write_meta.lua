-- One username's write in its shard, on a cluster (write_rules.lua comes first), where its
-- document lives on another slot: this runs first, write_document.lua after it if accepted,
-- and the change message is published once both have answered.
-- KEYS: 1 the shard's pending set, 2 running set, 3 meta hash, 4 windows hash, 5 change counter
-- ARGV: 1 username, 2 version, 3 digest, 4 status, 5 own entry, 6 entries, 7 forget (1/0)
-- Returns {accepted 0/1, previous status, document differs 0/1, entries moved 0/1, seq, what the
-- sets took (write_rules.lua)}: seq is
-- the change counter's next value, taken when the document differs or the entries moved,
-- else 0. A reader that sees the counter pass a value it never hears of stops trusting what
-- it remembers, so a writer that dies before publishing leaves no reader stale.
local ok, previous, differs, moved, taken = take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
    ARGV[5], ARGV[6], ARGV[7])
if not ok then
    return {0, 0, 0, 0, 0, ''}
end
local seq = 0
if differs or moved then
    seq = redis.call('INCR', KEYS[5])
end
return {1, previous, differs and 1 or 0, moved and 1 or 0, seq, taken}
