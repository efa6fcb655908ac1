-- One username's document (write_rules.lua comes first).
-- KEYS: 1 document. ARGV: 1 version (decimal), 2 digest, 3 document JSON, 4 TTL seconds.
return write_document(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
