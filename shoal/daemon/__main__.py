from shoal.daemon.main import main

main()
