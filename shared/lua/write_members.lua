-- One username's queue entries on its shard (write_rules.lua comes first).
-- KEYS: 1 the shard's pending set, 2 its running set, 3 its members hash.
-- ARGV: 1 username, 2 version (decimal), 3 its active members (space separated), 4 forget (1/0).
return write_members(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
