-- A mix of the user routes. Of every 20 requests: 10 confirm with the right
-- code (50 %), 4 GET (20 %), 2 resend (10 %), 2 cancel (10 %) and 2 confirm
-- with a wrong code (10 %, which get 422). Each request takes a fresh
-- pending operation, so every status is known in advance whatever order
-- the connections run in. See ops.lua for the arguments and the result line.
local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_dir .. "ops.lua").run({
	pattern = {
		"confirm", "get", "confirm", "resend", "confirm",
		"get", "confirm", "wrong", "confirm", "cancel",
		"confirm", "get", "confirm", "resend", "confirm",
		"get", "confirm", "wrong", "confirm", "cancel",
	},
	reuse = false,
})
