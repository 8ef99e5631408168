// urst view: one OpenSeadragon viewer per image (the result, and with --compare the original beside it),
// zoom and pan locked together. The address keeps the view: #x=PX&y=PX&zoom=Z centres image pixel (x, y)
// of the first image at Z screen pixels per image pixel (1: 100%).
// When every image is drawn at the current view, <html> gets data-ready="true", data-levels, per image
// [deepest level whose tiles were loaded, deepest level there is], and data-views, per image [x, y, zoom]
// of the view (read by the browser test).
"use strict";

(async function () {
  const panes = document.getElementById("panes");
  const images = await (await fetch("images.json")).json();
  const boxes = images.map((image) => {  // every pane first: a viewer made before its neighbour would resize
    const pane = document.createElement("div");
    const box = document.createElement("div");
    const label = document.createElement("div");
    pane.className = "pane";
    box.className = "viewer";
    label.className = "label";
    label.textContent = image.label;
    pane.append(box, label);
    panes.append(pane);
    return box;
  });
  const viewers = images.map((image, i) => OpenSeadragon({
    element: boxes[i],
    tileSources: image.tileSource,
    drawer: "canvas",
    showNavigationControl: false,  // its button images are not vendored: wheel, drag, keys and touch zoom
    maxZoomPixelRatio: 8,          // look at single pixels
    visibilityRatio: 0.2,
    animationTime: 0.4,
    preserveImageSizeOnResize: true,  // resizing the window does not rescale the image
  }));
  const opened = viewers.map((viewer) => new Promise((resolve, reject) => {
    viewer.addOnceHandler("open", resolve);
    viewer.addOnceHandler("open-failed", (event) => reject(new Error(event.message)));
  }));
  try {
    await Promise.all(opened);
  } catch (error) {
    panes.innerHTML = "";
    const message = document.createElement("p");
    message.id = "error";
    message.textContent = `cannot open the image: ${error.message}`;
    panes.append(message);
    return;
  }
  viewers.forEach(showPixelsWhenMagnified);
  lockTogether(viewers);
  showHashView(viewers[0]);
  keepViewInHash(viewers[0]);
  reportLoading(viewers);
})();

function lockTogether(viewers) {
  let leader = null;  // the viewer being moved by the user; the others follow without echoing back
  for (const viewer of viewers) {
    const follow = () => {
      if (leader !== null) return;
      leader = viewer;
      const zoom = viewer.viewport.getZoom(), centre = viewer.viewport.getCenter();
      for (const other of viewers) {
        if (other !== viewer) {
          other.viewport.zoomTo(zoom, null, true);
          other.viewport.panTo(centre, true);
        }
      }
      leader = null;
    };
    viewer.addHandler("zoom", follow);
    viewer.addHandler("pan", follow);
  }
}

// Magnified (or at 100%), a pixel is drawn as a square of its own colour, not blurred with its neighbours;
// smaller, a level is scaled down smoothly
function showPixelsWhenMagnified(viewer) {
  const update = () => {
    const magnification = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
    viewer.drawer.setImageSmoothingEnabled(magnification < 0.99);
  };
  viewer.addHandler("update-viewport", update);  // every frame the view changes, animations included
  update();
}

function showHashView(viewer) {
  const wanted = new URLSearchParams(location.hash.slice(1));
  const x = parseFloat(wanted.get("x")), y = parseFloat(wanted.get("y")), zoom = parseFloat(wanted.get("zoom"));
  if (!isFinite(x) || !isFinite(y) || !(zoom > 0)) return;
  const viewport = viewer.viewport;
  viewport.zoomTo(viewport.imageToViewportZoom(zoom), null, true);
  viewport.panTo(viewport.imageToViewportCoordinates(x, y), true);
}

// [x, y, zoom]: the image pixel at the centre of the viewer and the screen pixels per image pixel
function imageView(viewer) {
  const viewport = viewer.viewport;
  const centre = viewport.viewportToImageCoordinates(viewport.getCenter(true));
  return [centre.x, centre.y, viewport.viewportToImageZoom(viewport.getZoom(true))];
}

function keepViewInHash(viewer) {
  viewer.addHandler("animation-finish", () => {
    const [x, y, zoom] = imageView(viewer);
    history.replaceState(null, "", `#x=${Math.round(x)}&y=${Math.round(y)}&zoom=${+zoom.toPrecision(3)}`);
  });
}

function reportLoading(viewers) {
  const deepest = viewers.map(() => -1);
  const root = document.documentElement;
  const update = () => {
    const items = viewers.map((viewer) => viewer.world.getItemAt(0));
    root.dataset.levels = JSON.stringify(viewers.map((viewer, i) => [deepest[i], viewer.source.maxLevel]));
    root.dataset.views = JSON.stringify(viewers.map(imageView));
    root.dataset.ready = String(items.every((item) => item && item.getFullyLoaded()));
  };
  viewers.forEach((viewer, i) => {
    viewer.addHandler("tile-loaded", (event) => {
      deepest[i] = Math.max(deepest[i], event.tile.level);
    });
    viewer.world.getItemAt(0).addHandler("fully-loaded-change", update);
  });
  update();
}
