package isolation

func (l *LinuxLauncher) poolForTest() *initPool { return l.pool }
func (l *PosixLauncher) poolForTest() *initPool { return l.pool }
