-- A form POST with a fixed body and Authorization header, both from the environment:
--   BENCH_AUTH  the Authorization header value (e.g. "Basic <base64 id:secret>")
--   BENCH_BODY  the application/x-www-form-urlencoded body
-- Used for the client_credentials token request and for introspection.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
