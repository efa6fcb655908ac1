-- A realistic poll mix for wrk: every request takes a random line of a paths file.
--   wrk -t1 -c64 -d10s --latency -s bench/wrk/mix.lua http://127.0.0.1:PORT -- PATHS_FILE
-- A line is "PATH" or "PATH<TAB>ETAG"; with an ETag the request carries If-None-Match.
-- At the end it prints "STATUS 200=<n> 304=<n> other=<n>" over all threads,
-- "OTHER <status> <body>" for the first answer that was neither 200 nor 304, and
-- "LATENCY p999_us=<n> max_us=<n>" (wrk's --latency report stops at p99).

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

local paths, tags = {}, {}

function init(args)
   local file = args[1]
   if not file then
      error("usage: wrk ... -s mix.lua URL -- PATHS_FILE")
   end
   for line in io.lines(file) do
      local path, tag = line:match("^([^\t]+)\t?(.*)$")
      if path then
         paths[#paths + 1] = path
         tags[#tags + 1] = (tag ~= "" and tag) or false
      end
   end
   if #paths == 0 then
      error("no paths in " .. file)
   end
   -- A fixed seed per thread: runs are repeatable and threads do not poll in lockstep.
   math.randomseed(1000 + id)
   ok, not_modified, other, sample = 0, 0, 0, ""
end

function request()
   local i = math.random(#paths)
   local tag = tags[i]
   if tag then
      return wrk.format("GET", paths[i], { ["If-None-Match"] = tag })
   end
   return wrk.format("GET", paths[i])
end

function response(status, headers, body)
   if status == 200 then
      ok = ok + 1
   elseif status == 304 then
      not_modified = not_modified + 1
   else
      other = other + 1
      if sample == "" then
         sample = status .. " " .. string.sub(string.gsub(body or "", "%s+", " "), 1, 200)
      end
   end
end

function done(summary, latency, requests)
   local a, b, c, first = 0, 0, 0, ""
   for _, thread in ipairs(threads) do
      a = a + thread:get("ok")
      b = b + thread:get("not_modified")
      c = c + thread:get("other")
      if first == "" then
         first = thread:get("sample")
      end
   end
   io.write(string.format("STATUS 200=%d 304=%d other=%d\n", a, b, c))
   io.write(string.format("LATENCY p999_us=%d max_us=%d\n", latency:percentile(99.9), latency.max))
   if first ~= "" then
      io.write("OTHER " .. first .. "\n")
   end
end
