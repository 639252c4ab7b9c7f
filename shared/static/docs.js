// The API documentation page (/docs): Swagger UI over the merged OpenAPI document. A file of its own, not an inline
// script, so the Content-Security-Policy can forbid inline script everywhere.
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
