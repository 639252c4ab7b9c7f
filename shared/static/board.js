// The requests board keeps itself current: every few seconds it asks when a request last changed (a tiny answer
// with no names), and only when that moves does it fetch the board again and swap in the new rows, saying so to
// screen readers. A file of its own: the CSP forbids inline script. Without script the board is as it was loaded.
(function () {
  var table = document.getElementById("board");
  if (!table || !window.fetch) { return; }
  var latest = table.getAttribute("data-latest");
  function look() {
    if (document.hidden) { return; }
    fetch("/board/latest", {credentials: "same-origin", cache: "no-store"})
      .then(function (answer) { return answer.ok ? answer.json() : Promise.reject(answer.status); })
      .then(function (body) {
        if (body.latest === latest) { return; }
        return fetch(window.location.href, {credentials: "same-origin", cache: "no-store"})
          .then(function (answer) { return answer.text(); })
          .then(function (html) {
            var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("board");
            if (!fresh) { return; }
            latest = fresh.getAttribute("data-latest");
            table.replaceWith(fresh);
            table = fresh;
            document.getElementById("board-updates").textContent = "Updated " + new Date().toLocaleTimeString();
          });
      })
      .catch(function () { /* try again next time */ });
  }
  setInterval(look, 5000);
})();
