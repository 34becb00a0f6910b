print("domus")
