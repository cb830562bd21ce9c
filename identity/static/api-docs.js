// Starts Swagger UI on /api/v1/docs from a file, not an inline script, so the page keeps
// the Content-Security-Policy (script-src 'self').
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,
  });
});
