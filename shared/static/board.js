// The requests board keeps itself current: every second it asks whether anything on it moved (a tiny answer
// with no names: when a request last changed, intake's own or by matching's and notify's events, and how many have
// offers about to time out), and only when that moves does it fetch the board again and swap in the new rows,
// saying so to screen readers. Each matched row then names its volunteer, with their phone, from matching's list
// of who holds each task (one fetch for the whole board, through the front door). A file of its own: the CSP
// forbids inline script. Without script the board is as it was loaded, each matched row linking to who has it.
(function () {
  var board = document.getElementById("board");
  if (!board || !window.fetch) { return; }
  var latest = board.getAttribute("data-latest");

  function nameVolunteers() {
    if (!board.querySelector("td.volunteer")) { return; }
    fetch("/offers/assigned", {credentials: "same-origin", cache: "no-store", headers: {"Accept": "text/html"}})
      .then(function (answer) { return answer.ok && !answer.redirected ? answer.text() : Promise.reject(answer.status); })
      .then(function (html) {
        var found = new DOMParser().parseFromString(html, "text/html").querySelectorAll("[data-assigned]");
        Array.prototype.forEach.call(found, function (item) {
          var cell = document.getElementById("volunteer-" + item.getAttribute("data-assigned"));
          if (!cell) { return; }
          cell.replaceChildren.apply(cell, Array.prototype.map.call(item.childNodes, function (node) {
            return document.importNode(node, true);
          }));
          cell.classList.add("named");
        });
      })
      .catch(function () { /* the rows keep their links */ });
  }

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
            board.replaceWith(fresh);
            board = fresh;
            nameVolunteers();
            document.getElementById("board-updates").textContent = "Updated " + new Date().toLocaleTimeString();
          });
      })
      .catch(function () { /* try again next time */ });
  }

  nameVolunteers();
  setInterval(look, 1000);  // a volunteer's concern shows within two seconds of the text
})();
