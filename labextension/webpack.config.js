// A build is the same in any checkout (CI rebuilds the extension and compares it with
// the one shipped). Webpack names the container's entry module by a hash of its
// identifier, which holds the absolute paths of what it exposes: it gets a fixed id.
class StableContainerEntryId {
  apply(compiler) {
    compiler.hooks.compilation.tap('StableContainerEntryId', compilation => {
      compilation.hooks.afterOptimizeModuleIds.tap('StableContainerEntryId', modules => {
        for (const module of modules) {
          if (module.constructor.name === 'ContainerEntryModule') {
            compilation.chunkGraph.setModuleId(module, 'jupyter-scriptrun-entry');
          }
        }
      });
    });
  }
}

module.exports = { plugins: [new StableContainerEntryId()] };
