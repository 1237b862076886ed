// Settings page: warn before leaving while a form holds unsaved changes, and clear a stale error message when a
// new request starts. No dependencies; htmx does the rest.
//
// A form opts in with `data-guard`. Typing marks it `data-dirty`; a successful save swaps in a fresh form
// without the mark, and a form re-rendered with errors (422) comes back marked by the server, since its changes
// are still unsaved.
(function () {
  "use strict";

  function guardedForm(target) {
    return target && target.closest ? target.closest("form[data-guard]") : null;
  }

  function markDirty(event) {
    var form = guardedForm(event.target);
    if (form) {
      form.setAttribute("data-dirty", "");
    }
  }

  document.addEventListener("input", markDirty);
  document.addEventListener("change", markDirty);

  // A form submitted without htmx navigates away on purpose: that is not leaving with unsaved changes.
  // htmx cancels the native submit (defaultPrevented), and then the form stays dirty until its answer arrives.
  document.addEventListener("submit", function (event) {
    var form = guardedForm(event.target);
    if (form && !event.defaultPrevented) {
      form.removeAttribute("data-dirty");
    }
  });

  window.addEventListener("beforeunload", function (event) {
    if (document.querySelector("form[data-guard][data-dirty]")) {
      event.preventDefault();
      event.returnValue = ""; // older browsers need a value to show the prompt
    }
  });

  document.addEventListener("htmx:beforeRequest", function () {
    var flash = document.getElementById("flash");
    if (flash) {
      flash.textContent = "";
    }
  });
})();
