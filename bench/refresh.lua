-- Refresh-token grant. Refresh tokens rotate: each one is good for exactly one request (a
-- second use revokes its whole family), so every request takes the next unused token from
-- a pool. Arguments (after "--"): the pool file, one token per line, and the number of wrk
-- threads; thread N takes lines N, N+threads, N+2*threads, ...
-- BENCH_AUTH holds the client's Authorization header. When a thread runs out of tokens it
-- sends an empty one, which the server answers with 400: wrk then reports non-2xx
-- responses and bench/run.py marks the result invalid (raise --refresh-pool).
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  local path, threads = args[1], tonumber(args[2])
  tokens = {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % threads == id - 1 then
      tokens[#tokens + 1] = line
    end
    line_no = line_no + 1
  end
  position = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
end

function request()
  position = position + 1
  local token = tokens[position] or ""
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end
