-- One fixed request (wrk's URL and -H headers); only the results line is added.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done
