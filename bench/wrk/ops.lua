-- Shared part of the wrk scripts of bench/run: reads the work file that
-- bench/lib/seed.py writes, builds every request before the run, and prints
-- one machine-readable result line.
--
-- Each route script calls ops.run(plan), with plan.pattern a list of request
-- kinds that repeats for the whole run and plan.reuse true when operations
-- may be requested again. Kinds:
--   confirm  PUT /operations/{uuid}/confirm with the right e-mail code
--   wrong    the same with a wrong code (the last digit changed): 422
--   cancel   PUT /operations/{uuid}/cancel
--   resend   PUT /operations/{uuid}/resend
--   get      GET /operations/{uuid}
--
-- Script arguments (after "--" on the wrk command line):
--   1  the work file: uuid, user, fingerprint, token and code per line,
--      tab-separated. Lines that start with '#' are skipped.
--   2  wrk's thread count (-t). Thread i of n takes data lines i, i + n,
--      i + 2n and so on, so no two threads share an operation.
--   3  optional: "reuse" cycles through the operations even when the plan
--      consumes them, for a responder that changes no state (the no-op
--      ceiling)
--
-- Without reuse each request takes the thread's next operation. When a
-- thread runs out, it counts the request in "exhausted" and stops, and the
-- run is invalid because wrk still divides by the full duration.
--
-- done() prints one line:
--   BENCH requests=N duration_us=N p50_us=N p99_us=N errors_connect=N
--   errors_read=N errors_write=N errors_status=N errors_timeout=N
--   available=N exhausted=N sent_KIND=N...
-- errors_status counts responses with a status above 399; sent_KIND counts
-- the requests of each kind handed to wrk, some still in flight at the end.

local ops = {}

-- The thread handles that setup() collects and done() reads, both in wrk's
-- main Lua state. init() and request() run in each thread's own state, whose
-- globals done() reads back through thread:get().
local threads = {}

local function read_slice(path, index, count)
	local file, err = io.open(path, "r")
	if not file then
		error("cannot open the work file: " .. tostring(err))
	end
	local slice = {}
	local line_number = 0
	local data_index = 0
	for line in file:lines() do
		line_number = line_number + 1
		if line:sub(1, 1) ~= "#" then
			if data_index % count == index then
				local uuid, _, fingerprint, token, code =
					line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)$")
				if not uuid then
					error(path .. ":" .. line_number .. ": expected 5 tab-separated fields")
				end
				slice[#slice + 1] = { uuid = uuid, fingerprint = fingerprint, token = token, code = code }
			end
			data_index = data_index + 1
		end
	end
	file:close()
	return slice
end

-- Returns the code with its last digit changed, a code of the right form that never matches.
local function wrong_code(code)
	local last = tonumber(code:sub(-1))
	return code:sub(1, -2) .. tostring((last + 1) % 10)
end

local function build_request(kind, op)
	local headers = {
		["Authorization"] = "Bearer " .. op.token,
		["Fingerprint"] = op.fingerprint,
	}
	local path = "/operations/" .. op.uuid
	if kind == "get" then
		return wrk.format("GET", path, headers)
	end
	if kind == "cancel" or kind == "resend" then
		return wrk.format("PUT", path .. "/" .. kind, headers)
	end
	local code = op.code
	if kind == "wrong" then
		code = wrong_code(code)
	elseif kind ~= "confirm" then
		error("unknown request kind " .. kind)
	end
	headers["Content-Type"] = "application/json"
	return wrk.format("PUT", path .. "/confirm", headers, '{"emailCode":"' .. code .. '"}')
end

function ops.run(plan)
	function setup(thread)
		thread:set("thread_index", #threads)
		threads[#threads + 1] = thread
	end

	function init(args)
		local path = args[1]
		local thread_count = tonumber(args[2])
		if not path or not thread_count then
			error("usage: wrk ... -s SCRIPT URL -- WORK_FILE THREADS")
		end
		reuse = plan.reuse or args[3] == "reuse"
		local slice = read_slice(path, thread_index, thread_count)
		requests = {}
		kinds = {}
		for position, op in ipairs(slice) do
			local kind = plan.pattern[(position - 1) % #plan.pattern + 1]
			requests[position] = build_request(kind, op)
			kinds[position] = kind
		end
		available = #requests
		if available == 0 then
			error("thread " .. thread_index .. " has no operations in " .. path)
		end
		next_position = 0
		exhausted = 0
		sent = {}
		for _, kind in ipairs(plan.pattern) do
			sent[kind] = 0
		end
	end

	function request()
		next_position = next_position + 1
		if next_position > available then
			if reuse then
				next_position = 1
			else
				exhausted = exhausted + 1
				next_position = available
				wrk.thread:stop()
			end
		end
		local kind = kinds[next_position]
		sent[kind] = sent[kind] + 1
		return requests[next_position]
	end

	function done(summary, latency, requests_rate)
		local available_total, exhausted_total, sent_total = 0, 0, {}
		for _, thread in ipairs(threads) do
			available_total = available_total + thread:get("available")
			exhausted_total = exhausted_total + thread:get("exhausted")
			for kind, count in pairs(thread:get("sent")) do
				sent_total[kind] = (sent_total[kind] or 0) + count
			end
		end
		local errors = summary.errors
		local line = string.format(
			"BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors_connect=%d"
				.. " errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d"
				.. " available=%d exhausted=%d",
			summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
			errors.connect, errors.read, errors.write, errors.status, errors.timeout,
			available_total, exhausted_total)
		for kind, count in pairs(sent_total) do
			line = line .. string.format(" sent_%s=%d", kind, count)
		end
		io.write(line .. "\n")
	end
end

return ops
