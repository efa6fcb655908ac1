-- One round trip for a poll on a single Redis: the document, and its job's place in the queue.
-- KEYS: 1 document, 2 generation marker, then per shard in order its pending and running sets
-- ARGV: 1 the username's own shard (0-based)
-- Returns {document or false, rank or false, queue size, generation present (0/1)}.
local doc = redis.call('GET', KEYS[1])
local generation = redis.call('EXISTS', KEYS[2])
if not doc then
    return {false, false, 0, generation}
end
local member = string.match(doc, '"queue_member":"([^"]+)"')
if not member then
    return {doc, false, 0, generation}
end
local own = 3 + 2 * tonumber(ARGV[1])
if string.sub(member, -1) ~= 'P' then
    own = own + 1
end
local size = 0
for i = 3, #KEYS do
    size = size + redis.call('ZCARD', KEYS[i])
end
if not redis.call('ZSCORE', KEYS[own], member) then
    return {doc, false, size, generation}
end
-- Every set sorts alike: the rank is how many members of all of them sort before this one.
local rank = 0
for i = 3, #KEYS do
    rank = rank + redis.call('ZLEXCOUNT', KEYS[i], '-', '(' .. member)
end
return {doc, rank, size, generation}
