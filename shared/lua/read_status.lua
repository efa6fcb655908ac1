-- One round trip for a poll: the document, and its job's place in the queue.
-- KEYS: 1 document, 2 active-queue sorted set, 3 generation marker
-- Returns {document or false, rank or false, queue size, generation present (0/1)}.
local doc = redis.call('GET', KEYS[1])
local generation = redis.call('EXISTS', KEYS[3])
if not doc then
    return {false, false, 0, generation}
end
local member = string.match(doc, '"queue_member":"([^"]+)"')
if not member then
    return {doc, false, 0, generation}
end
return {doc, redis.call('ZRANK', KEYS[2], member) or false, redis.call('ZCARD', KEYS[2]), generation}
