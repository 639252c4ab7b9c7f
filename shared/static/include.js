// A section marked `data-include="<path>"` is replaced by the HTML that path answers, so a page can show what
// another service owns (intake's request page shows matching's volunteers for it). Without script, or when the
// fetch fails, the section keeps its link to the full page. A file of its own: the CSP forbids inline script.
document.querySelectorAll("[data-include]").forEach(function (section) {
  fetch(section.getAttribute("data-include"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
    .then(function (answer) {  // a redirect is to sign in again: keep the link
      return answer.ok && !answer.redirected ? answer.text() : Promise.reject(answer.status);
    })
    .then(function (html) {
      var holder = document.createElement("div");
      holder.innerHTML = html;
      section.replaceWith.apply(section, holder.childNodes);
    })
    .catch(function () { section.removeAttribute("aria-busy"); });
});
