-- Password sign-in (POST /sign-in, the form as a browser sends it). Each request signs in a
-- different account, so none of them is slowed down by its own throttle or counted as a new
-- device; every account in the pool has the password in BENCH_PASSWORD.
-- Arguments (after "--"): the pool file, one email per line, and the number of wrk threads;
-- thread N takes lines N, N+threads, N+2*threads, ...
-- BENCH_COOKIE holds the Flask session cookie whose CSRF token is BENCH_CSRF (one form
-- session serves every request: the token lives as long as that session). When a thread
-- runs out of accounts it sends an empty email, which the server answers with 400: wrk then
-- reports non-2xx responses (raise --signin-pool).
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local function encode(text)
  return (text:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  local path, threads = args[1], tonumber(args[2])
  emails = {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % threads == id - 1 then
      emails[#emails + 1] = line
    end
    line_no = line_no + 1
  end
  position = 0
  prefix = "csrf_token=" .. encode(os.getenv("BENCH_CSRF")) .. "&password="
    .. encode(os.getenv("BENCH_PASSWORD")) .. "&next=&email="
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Cookie"] = os.getenv("BENCH_COOKIE")
end

function request()
  position = position + 1
  return wrk.format(nil, nil, nil, prefix .. encode(emails[position] or ""))
end
