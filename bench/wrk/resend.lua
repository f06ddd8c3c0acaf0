-- PUT /operations/{uuid}/resend: 200, each operation once. bench/lib/seed.py
-- dates the first mail 300 s back, past the default resend_cooldown of 60 s,
-- so every first resend is allowed. Each one queues a code mail that the
-- running userops-mailer delivers to the SMTP sink. See ops.lua for the
-- arguments and the result line.
local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_dir .. "ops.lua").run({ pattern = { "resend" }, reuse = false })
