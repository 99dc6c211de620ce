// Demo control: changing the new customer's country swaps in that country's sample person (name, email, mobile),
// unless the newcomer typed a person of their own. A UK customer keeps a UK mobile, so her time zone is London's.
(function () {
  "use strict";
  var box = document.getElementById("new-customer");
  var country = document.getElementById("demo-country");
  if (!box || !country) { return; }
  var samples = JSON.parse(box.getAttribute("data-samples") || "{}");
  var fields = ["name", "email", "phone"];
  function isSample(field, value) {
    if (value === "") { return true; }
    return Object.keys(samples).some(function (code) { return samples[code][field] === value; });
  }
  country.addEventListener("input", function () {
    var person = samples[country.value.trim().toUpperCase()];
    if (!person) { return; }
    var untouched = fields.every(function (field) {
      var input = document.getElementById("demo-" + field);
      return !input || isSample(field, input.value);
    });
    if (!untouched) { return; }
    fields.forEach(function (field) {
      var input = document.getElementById("demo-" + field);
      if (input) { input.value = person[field]; }
    });
  });
}());
