// state.js: all that the page remembers, in one object: the pad, the requests, the explain panel,
// number mode and collect mode. The other modules read and change it here, and keep nothing of their own
// but constants, so what the page knows at any moment is this object (and the page itself). Each part is
// changed by the modules it names; the display modules (answer.js, number.js) only read it.

export const $ = (id) => document.getElementById(id);

export const state = {
  info: null,            // GET /info: the checkpoint and its layers
  pad: {
    version: 0,          // goes up at every change of what is on the pad
    stroking: false,     // a pen, finger or mouse button is down on the pad
    inked: false,        // anything drawn since Clear?
    photo: false,        // the pad shows a photo (a new stroke starts a new drawing)
    last: null,          // where the stroke has got to, in canvas pixels
  },
  requests: {            // reading what is on the pad: POST /predict, or /read in number mode
    sentVersion: 0,      // the version last sent
    shownVersion: 0,     // the version whose answer is on the page
    answersShown: 0,     // answers shown since the page opened (the tests check that some come mid-drawing)
    inFlight: false,     // at most one request at a time: the next one waits for the answer
    lastSent: 0,         // when the last one went (performance.now())
    timer: null,         // the next one, waiting for its turn
  },
  explain: {             // why this digit (POST /explain) and fooling the net (POST /attack)
    file: null,          // the image whose answer is on the page, once the drawing is still: what /explain
    version: 0,          // and /attack are asked about, and its version
    pinned: null,        // the digit whose map was asked for by a click on its bar; null: the digit read
    changedRows: null,   // the attack's changed 28x28 image, for "Draw over it"
    explaining: {busy: false, waiting: null},  // a map on its way, and the newest asked meanwhile
    attacking: {busy: false, waiting: null},   // an attack on its way, and the newest asked meanwhile
  },
  number: {
    wide: false,         // "a number": a pad three times as wide, read by POST /read
  },
  collect: {             // draw.py --collect DIR
    counts: null,        // drawings of each digit saved so far (null: collect mode is off)
    wanted: 0,           // the digit asked for
    saved: 0,            // drawings saved since the page opened (the tests wait for it)
  },
};
