-- Which of these documents are missing or older than a version (for a rebuild's sweep).
-- KEYS: document keys. ARGV: 1 version (decimal). Returns the indexes (1-based) of those keys.
local version, out = ARGV[1], {}
for i, key in ipairs(KEYS) do
    local doc = redis.call('GET', key)
    local v = doc and string.match(doc, '"version":(%d+)')
    if not v or #v < #version or (#v == #version and v < version) then
        out[#out + 1] = i
    end
end
return out
