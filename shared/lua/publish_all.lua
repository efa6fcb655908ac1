-- Publish many messages on one channel in one call (no keys: any node of a cluster will do;
-- PUBLISH reaches subscribers on every node).
-- ARGV: 1 channel, 2.. the messages. Returns how many were published.
for i = 2, #ARGV do
    redis.call('PUBLISH', ARGV[1], ARGV[i])
end
return #ARGV - 1
