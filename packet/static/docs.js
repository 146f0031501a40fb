// GET /docs: render the gateway's OpenAPI document (the element's data-spec) with Swagger UI.
window.ui = SwaggerUIBundle({
  url: document.getElementById("docs").dataset.spec,
  dom_id: "#docs",
  deepLinking: true,
  // The default would load a badge from validator.swagger.io: the page asks no other host.
  validatorUrl: null,
});
