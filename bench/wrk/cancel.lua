-- PUT /operations/{uuid}/cancel of a pending operation: 200, each operation
-- once. See ops.lua for the arguments and the result line.
local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_dir .. "ops.lua").run({ pattern = { "cancel" }, reuse = false })
