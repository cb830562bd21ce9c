-- A round-robin mix of requests, for the memory run of bench/run.py (--rss-requests).
-- Argument (after "--"): a file with one request per line, four tab-separated fields:
-- method, path, Authorization header (may be empty) and body (may be empty; a body is sent
-- form-encoded). Each thread starts at a different request of the list.
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  requests = {}
  for line in io.lines(args[1]) do
    local method, path, auth, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    if auth ~= "" then
      headers["Authorization"] = auth
    end
    if body ~= "" then
      headers["Content-Type"] = "application/x-www-form-urlencoded"
    else
      body = nil
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  position = id
end

function request()
  position = position % #requests + 1
  return requests[position]
end
