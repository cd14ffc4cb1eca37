"use strict";
// Before/after dividers: the range input is the accessible control (arrow keys, screen
// readers); dragging on the picture moves the same input.
document.querySelectorAll("[data-compare]").forEach(function (box) {
  var slider = document.getElementById(box.getAttribute("data-compare"));
  function show(value) {
    box.style.setProperty("--pos", value + "%");
    slider.value = value;
    slider.setAttribute("aria-valuetext", Math.round(value) + "% before");
  }
  function fromPointer(event) {
    var r = box.getBoundingClientRect();
    show(Math.max(0, Math.min(100, (event.clientX - r.left) / r.width * 100)));
  }
  slider.addEventListener("input", function () { show(Number(slider.value)); });
  box.addEventListener("pointerdown", function (event) {
    box.setPointerCapture(event.pointerId);
    fromPointer(event);
    event.preventDefault();
  });
  box.addEventListener("pointermove", function (event) {
    if (box.hasPointerCapture(event.pointerId)) fromPointer(event);
  });
  show(Number(slider.value));
});
// The 200% crops show the 100% crop's picture: it is in the file once.
document.querySelectorAll("img[data-same-as]").forEach(function (img) {
  img.src = document.getElementById(img.getAttribute("data-same-as")).src;
});
