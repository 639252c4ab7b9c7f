// Anything marked `data-print` prints the page when clicked (the metrics dashboard and report). A file of its own,
// not an inline onclick, so the Content-Security-Policy can forbid inline script everywhere.
document.addEventListener("click", function (event) {
  var control = event.target.closest("[data-print]");
  if (control) {
    event.preventDefault();
    window.print();
  }
});
