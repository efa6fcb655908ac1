-- A document on a cluster, after write_meta.lua accepted it (write_rules.lua comes first).
-- KEYS: 1 document. ARGV: 1 version, 2 document JSON, 3 TTL seconds, 4 differs (1/0),
-- 5 the prefix every document's JSON starts with, its version's digits right after it
-- (shared/model/document.py VERSION_PREFIX).
-- Returns 0 stale, 1 unchanged, 2 written. Two accepted writes of one username may still
-- reach this slot out of order; the held document's version settles it. It is read only
-- at its fixed place, right after the prefix: no other field's name or value can pass for it.
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[5]) == ARGV[5] then
    local held_version = string.match(held, '^%d+', #ARGV[5] + 1)
    if held_version and older(ARGV[1], held_version) then
        return 0
    end
end
return put_document(KEYS[1], ARGV[2], ARGV[3], ARGV[4] == '1')
