package queue

// Test-only access to internals.

func (s *Store) SetCommitHook(f func(n int)) { s.commitHook = f }
func (s *Store) SetSyncHook(f func())        { s.sp.syncHook = f }
func (s *Store) SetStatfs(f func(string) (int64, error)) {
	s.disk.statfs = f
}
