/** A generic store: get, put, delete and list(prefix) over a Map (or a Map-like `map` given, such as one that folds case). */
export class Generic {
  constructor(map = new Map()) {
    this.map = map;
  }
  async get(k) {
    return this.map.get(k);
  }
  async put(k, v) {
    this.map.set(k, v);
  }
  async delete(k) {
    this.map.delete(k);
  }
  async list(prefix) {
    return [...this.map.keys()].filter((k) => k.startsWith(prefix));
  }
}
