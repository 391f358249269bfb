'use strict';
// CommonJS entry point: require('j1msky-sdk'). The implementation lives in lib.cjs.
module.exports = require('./lib.cjs');
