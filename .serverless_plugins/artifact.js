'use strict';

// The two packaging steps serverless-python-requirements does not do for us (see scripts/lambda_artifact.py):
//  - before it installs requirements: write them from pyproject.toml + constraints.txt (runtime deps only);
//  - after the zip is complete, before osls hashes it into the template: add the runtime's bytecode to it
//    (compiled by custom.pythonRequirements.pythonBin, which must be the runtime's Python version).
// Listed before serverless-python-requirements in serverless.yml, so for the same lifecycle event our hook
// runs first; the bytecode step uses a later event, so it sees the zip with the requirements injected.

const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

class TaskApiArtifact {
  constructor(serverless, options, { log }) {
    this.serverless = serverless;
    this.log = log;
    this.hooks = {
      'before:package:createDeploymentArtifacts': () => this.writeRequirements(),
      'before:package:compileFunctions': () => this.compileBytecode(),
    };
  }

  get servicePath() {
    return this.serverless.serviceDir || this.serverless.config.servicePath;
  }

  run(python, args, env = {}) {
    const result = spawnSync(python, [path.join(this.servicePath, 'scripts', 'lambda_artifact.py'), ...args], {
      cwd: this.servicePath,
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    if (result.error) {
      throw new this.serverless.classes.Error(`Cannot run ${python}: ${result.error.message}`);
    }
    if (result.status !== 0) {
      throw new this.serverless.classes.Error(`scripts/lambda_artifact.py ${args[0]} failed:\n${result.stderr}`);
    }
    this.log.info(result.stdout.trim());
  }

  writeRequirements() {
    // The installed metadata in .venv says what the runtime dependencies pull in (make install creates it).
    const venvPython = path.join(this.servicePath, '.venv', 'bin', 'python');
    const python = fs.existsSync(venvPython) ? venvPython : 'python3';
    const fileName = this.serverless.service.custom.pythonRequirements.fileName;
    this.run(python, ['requirements', path.join(this.servicePath, fileName)], {
      LAMBDA_PYTHON_VERSION: this.runtimeVersion,
    });
  }

  get runtimeVersion() {
    return this.serverless.service.provider.runtime.replace(/^python/, ''); // python3.13 -> 3.13
  }

  compileBytecode() {
    const { service } = this.serverless;
    const version = this.runtimeVersion;
    const artifacts = new Set();
    if (service.package && service.package.artifact) artifacts.add(service.package.artifact);
    for (const name of service.getAllFunctions()) {
      const fn = service.getFunction(name);
      if (fn.package && fn.package.artifact) artifacts.add(fn.package.artifact);
    }
    const python = service.custom.pythonRequirements.pythonBin;
    for (const artifact of artifacts) {
      this.run(python, ['bytecode', path.resolve(this.servicePath, artifact)], { LAMBDA_PYTHON_VERSION: version });
    }
  }
}

module.exports = TaskApiArtifact;
