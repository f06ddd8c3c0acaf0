-- GET /operations/{uuid}: 200. Reads only, so each thread cycles through its
-- operations again. See ops.lua for the arguments and the result line.
local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_dir .. "ops.lua").run({ pattern = { "get" }, reuse = true })
