"""The small primitives every write use case is made of: lock the agent (`locks`), check
the caller's version (`context`), record the revision (`revisions`), announce the change
(`announce`). They depend on the tables and the database handle only, never on a resource
package, so any service can use them without importing another service."""
