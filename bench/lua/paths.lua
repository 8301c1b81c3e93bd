-- GET requests over many paths read from a file (one path per line), so every request reads a
-- different row. Args: <paths file>. Each thread starts at its own offset; -H headers apply to all.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local paths = {}
local index = 0

function init(args)
   for line in io.lines(args[1]) do
      if #line > 0 then table.insert(paths, line) end
   end
   assert(#paths > 0, "no paths in " .. args[1])
   -- Threads walk the list from different places (the thread id is set by setup()).
   index = math.floor(#paths * (tid or 0) / 2)
end

function request()
   index = index + 1
   if index > #paths then index = 1 end
   return wrk.format("GET", paths[index])
end
