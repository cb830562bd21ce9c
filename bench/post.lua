-- A form POST with a fixed body and Authorization header, both from the environment:
--   BENCH_AUTH  the Authorization header value (e.g. "Basic <base64 id:secret>")
--   BENCH_BODY  the application/x-www-form-urlencoded body
--   BENCH_CONTENT_TYPE  its content type (form-encoded unless set)
-- Used for the client_credentials token request, introspection and the decision API.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
