// The docs page's initializer (the page's Content-Security-Policy allows no inline
// script): Swagger UI on this daemon's own OpenAPI document. *Try it out* calls this
// daemon; the key given under *Authorize* stays in the page's memory (not stored).
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,          // no badge from an online validator: nothing leaves the daemon
  defaultModelsExpandDepth: 0,
  docExpansion: "list",
  tryItOutEnabled: false,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
