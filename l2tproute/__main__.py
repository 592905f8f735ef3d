from l2tproute.fronts.entry import main

main()
