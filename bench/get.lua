-- A GET, with the Authorization header from BENCH_AUTH when it is set (UserInfo sends
-- "Bearer <access token>"; discovery and JWKS send none).
wrk.method = "GET"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
